"""The Label Studio labelling interface of a cleaning project (``DIR/labelstudio.xml``): the
image, its current label, and a single choice of class, whose names the tasks we write and the
exports we read agree on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

from benchmark.atomic import write_bytes
from benchmark.clean.inputs import LS_CONTROL

#: The interface's image object (its class choice is ``LS_CONTROL``).
LS_TO_NAME = "image"
#: The interface's file name in a project folder.
LABEL_CONFIG = "labelstudio.xml"


def write_label_config(folder: Path, classes: Sequence[str]) -> None:
    """Label Studio's labelling interface for the project: an image and a choice of class."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    xml = (
        "<View>\n"
        f'  <Image name="{LS_TO_NAME}" value="$image"/>\n'
        '  <Header value="Current label: $current_label"/>\n'
        f'  <Choices name="{LS_CONTROL}" toName="{LS_TO_NAME}" choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )
    write_bytes(folder / LABEL_CONFIG, xml.encode())
