"""The Web Site Process Bus under the reference's module name (``sitebus.bus``)."""

from sitebus.bus import Bus, ChannelFailures, states

__all__ = ["Bus", "ChannelFailures", "states"]
