"""Entry script of the frozen app (PyInstaller's `Analysis` starts here): the same as the `edpn-gui` console script.

torch is imported before anything touches PySide6 (the runtime hook pyi_rth_edpn.py already did so in a frozen
build; this keeps the order when the script is run by hand).
"""
import multiprocessing
import sys

import torch  # noqa: F401  (import order matters: torch before PySide6)

from edpn_gui.app import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
