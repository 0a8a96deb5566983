"""EDPN Restore desktop app (PySide6). Every restoration goes through `edpn_core`; nothing is restored here.

torch is imported before anything loads PySide6: on Windows, loading Qt's DLLs first makes torch's own DLLs
fail to initialise (a known import-order failure), so the package guarantees the order for every entry point.
"""
import torch  # noqa: F401  (import order matters, see above)
