"""Package tutorial 9: upload a file (its size, name and type are shown) and download one.

The upload arrives as a ``Part`` whose ``file`` is read in chunks here, so a big upload is
never held twice. The download is ``pdf_file.pdf`` from this package, sent as an attachment.
"""

import os

import services.web as cherrypy
from services.web.lib import static
from services.web.tutorial._tutconf import TUTCONF as tutconf

HERE = os.path.dirname(os.path.abspath(__file__))

FORM = (
    "<html><body>"
    "<h2>Send a file</h2>"
    '<form action="upload" method="post" enctype="multipart/form-data">'
    'Pick one: <input type="file" name="myFile" /> <input type="submit" value="Send" />'
    "</form>"
    '<h2>Get a file</h2><p><a href="download">pdf_file.pdf</a></p>'
    "</body></html>"
)


def report(size: int, name: str, kind: str) -> str:
    """Describe an uploaded file, laid out as the reference's tutorial lays it out."""
    rows = (f"myFile length: {size}<br />", f"myFile filename: {name}<br />",
            f"myFile mime-type: {kind}")
    inner = "".join("\n" + " " * 12 + row for row in rows)
    return f"<html>\n{' ' * 8}<body>{inner}\n{' ' * 8}</body>\n{' ' * 8}</html>"


class FileDemo:
    """``/`` has the forms, ``/upload`` reports on a file, ``/download`` sends one."""

    @cherrypy.expose
    def index(self):
        """Show the upload form and the download link."""
        return FORM

    @cherrypy.expose
    def upload(self, myFile):  # noqa: N803 - the form's field name
        """Count the uploaded bytes and describe the file."""
        size = 0
        for chunk in iter(lambda: myFile.file.read(8192), b""):
            size += len(chunk)
        return report(size, myFile.filename, myFile.content_type)

    @cherrypy.expose
    def download(self):
        """Send pdf_file.pdf as an attachment."""
        path = os.path.join(HERE, "pdf_file.pdf")
        return static.serve_file(path, "application/x-download", "attachment",
                                 os.path.basename(path))


if __name__ == "__main__":
    cherrypy.quickstart(FileDemo(), config=tutconf)
