"""Page handlers: the found handler with its arguments, and what wrong arguments mean.

The dispatcher wraps the handler it finds in a ``LateParamPageHandler``: positional
arguments from the path, keyword arguments from ``request.params`` read when the handler is
called (so tools running before it may change them). When the call fails with TypeError
because the arguments do not fit the handler's signature, ``mismatch_error`` decides the
answer: 404 for a wrong path or query string, 400 for a wrong body; the names of the wrong
parameters are shown where ``request.show_mismatched_params`` is on. A TypeError raised
inside the handler itself is left alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from services.web._cperror import HTTPError
from services.web._serving import serving

__all__ = ["LateParamPageHandler", "PageHandler", "mismatch_error", "test_callable_spec"]


class PageHandler:
    """A callable which runs the page handler with fixed arguments."""

    def __init__(self, callable: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.callable = callable
        self.args = args
        self.kwargs = kwargs

    def __call__(self) -> Any:
        args = self.args
        kwargs = self.kwargs
        try:
            return self.callable(*args, **kwargs)
        except TypeError as error:
            mismatch = _mismatch_for_call(self.callable, args, kwargs)
            if mismatch is not None:
                raise mismatch from None
            raise error from None


class LateParamPageHandler(PageHandler):
    """A page handler whose keyword arguments are ``request.params``, read when it is called.

    Tools running before the handler may thereby change the arguments it receives.
    """

    @property
    def kwargs(self) -> dict[str, Any]:
        params = serving.request.params
        if self._kwargs:
            params = {**params, **self._kwargs}
        return params

    @kwargs.setter
    def kwargs(self, kwargs: dict[str, Any]) -> None:
        serving.request.kwargs = kwargs
        self._kwargs = kwargs


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        call = getattr(func, "__call__", None)  # noqa: B004
        if call is None:
            return None
        try:
            return inspect.signature(call)
        except (TypeError, ValueError):
            return None


def mismatch_error(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any],
                   body_params: set[str], show: bool) -> HTTPError | None:
    """Return the HTTPError for arguments that do not fit ``signature``, or None if they fit.

    Missing arguments and extra positional ones (path segments) are 404; a parameter given
    twice is 404 if one came from the query string, else 400; unexpected keywords are 404
    from the query string and 400 from the body. ``show`` puts the names in the message.
    """
    positional: list[str] = []  # may be filled from the path (args)
    keywords: set[str] = set()  # may be filled from params (kwargs)
    defaults: set[str] = set()
    varargs = varkw = False
    for param in signature.parameters.values():
        kind = param.kind
        if kind is param.VAR_POSITIONAL:
            varargs = True
            continue
        if kind is param.VAR_KEYWORD:
            varkw = True
            continue
        if kind is not param.KEYWORD_ONLY:
            positional.append(param.name)
        if kind is not param.POSITIONAL_ONLY:
            keywords.add(param.name)
        if param.default is not param.empty:
            defaults.add(param.name)
    usage = dict.fromkeys([*positional, *(k for k in keywords if k not in positional)], 0)
    extra_positional = max(0, len(args) - len(positional))
    for name in positional[:len(args)]:
        usage[name] += 1
    extra_kwargs = set()
    for key in kwargs:
        if key in keywords:
            usage[key] += 1
        else:
            extra_kwargs.add(key)
    for name in defaults:
        if usage[name] == 0:
            usage[name] = 1
    missing = [name for name, count in usage.items() if count == 0]
    multiple = [name for name, count in usage.items() if count > 1]

    if missing:
        message = f"Missing parameters: {','.join(missing)}" if show else None
        return HTTPError(404, message)
    if extra_positional and not varargs:
        return HTTPError(404)
    qs_params = set(kwargs) - body_params
    if multiple:
        code = 404 if qs_params.intersection(multiple) else 400
        message = f"Multiple values for parameters: {','.join(multiple)}" if show else None
        return HTTPError(code, message)
    if extra_kwargs and not varkw:
        extra_qs = sorted(qs_params & extra_kwargs)
        if extra_qs:
            message = (f"Unexpected query string parameters: {', '.join(extra_qs)}"
                       if show else None)
            return HTTPError(404, message)
        extra_body = sorted(body_params & extra_kwargs)
        if extra_body:
            message = f"Unexpected body parameters: {', '.join(extra_body)}" if show else None
            return HTTPError(400, message)
    return None


def _mismatch_for_call(func: Callable[..., Any], args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> HTTPError | None:
    signature = _signature(func)
    if signature is None:
        return None
    request = serving.request
    body = getattr(request, "body", None)
    body_params = set(getattr(body, "params", None) or ())
    return mismatch_error(signature, args, kwargs, body_params,
                          getattr(request, "show_mismatched_params", False))


def test_callable_spec(callable: Callable[..., Any], callable_args: tuple[Any, ...],
                       callable_kwargs: dict[str, Any]) -> None:
    """Raise the HTTPError for arguments that do not fit the callable, if they don't."""
    error = _mismatch_for_call(callable, tuple(callable_args), dict(callable_kwargs))
    if error is not None:
        raise error


test_callable_spec.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
