"""Real training photos from Debian packages, with their licences: sources, fetching, splitting and packing.

REDS is not reachable offline, but several Debian packages ship freely licensed photographs of 1 MP and
more, and a few ship smaller photos of animals, people and buildings. ``sources`` lists them, ``fetch``
downloads and halves them (``eet`` digs the photo out of an Enlightenment background, ``rcc`` out of a Qt
resource file, ``licences`` reads which licence covers each file), ``split`` holds photos out
of training (a set to pick checkpoints, another for reported figures) and packs crops for a GPU machine.
"""
from .eet import jpeg_streams, largest_jpeg
from .fetch import MIN_SIDE, fetch_photos, halve
from .licences import license_for_file, parse_copyright, stanza_for_file
from .rcc import QtResources
from .sources import CONTENT_KINDS, MIN_PIXELS, SOURCES, PhotoSource
from .split import REPORT_PHOTOS, PhotoSplit, arrange_split, pack_photos, split_photos

__all__ = ["CONTENT_KINDS", "MIN_PIXELS", "MIN_SIDE", "REPORT_PHOTOS", "SOURCES", "PhotoSource", "PhotoSplit",
           "QtResources", "arrange_split", "fetch_photos", "halve", "jpeg_streams", "largest_jpeg",
           "license_for_file", "pack_photos", "parse_copyright", "split_photos", "stanza_for_file"]
