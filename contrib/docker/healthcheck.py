"""The image's HEALTHCHECK: exit 0 when the URL (the site's /health) answers 200, else 1.

The slim Python image has neither curl nor wget; this needs only the standard library. One
line on stdout says why, which `docker inspect` shows in the health log.
"""

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else "http://127.0.0.1:8080/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            print(f"{url}: {response.status}")
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as error:
        print(f"{url}: {error.code}")
    except OSError as error:
        print(f"{url}: {error}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
