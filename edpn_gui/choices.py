"""What the app's menus offer and how they are labelled, shared by the main window and the batch dialog."""

TASK_LABELS = {"sr": "Super-resolution x4", "deblock": "Deblocking"}
ENSEMBLE_LABELS = {"off": "Off", "x4": "x4 (4x time)", "x8": "x8 (8x time)"}  # self-ensemble multiplies time
FORMAT_LABELS = {"png": "PNG", "jpg": "JPEG", "webp": "WebP", "tiff": "TIFF"}
ALPHA_FORMATS = {"png", "webp", "tiff"}  # the save formats that keep transparency (JPEG has none)
QUALITY_FORMATS = {"jpg", "webp"}  # the save formats a quality setting applies to
