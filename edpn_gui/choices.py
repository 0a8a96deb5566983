"""What the app's menus offer and how they are labelled, shared by the main window and the batch dialog."""
from edpn_core.inference.imageio import SAVE_FORMATS

TASK_LABELS = {"sr": "Super-resolution x4", "deblock": "Deblocking"}
ENSEMBLE_LABELS = {"off": "Off", "x4": "x4 (4x time)", "x8": "x8 (8x time)"}  # self-ensemble multiplies time
FORMAT_LABELS = {key: f.label for key, f in SAVE_FORMATS.items()}
ALPHA_FORMATS = {key for key, f in SAVE_FORMATS.items() if f.alpha}  # the save formats that keep transparency
QUALITY_FORMATS = {key for key, f in SAVE_FORMATS.items() if f.quality}  # those a quality setting applies to
