"""The example app of the image (contrib/docker): replace it with the site's own."""


def application(environ, start_response):
    body = b"Hello from sitebus in a container\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
