"""The desktop's light or dark colour scheme, followed. Qt reports it on every desktop (XDG portal, Windows, macOS),
but changes the palette itself only under some platform themes: elsewhere a dark desktop got a light window."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

Role = QPalette.ColorRole
DARK_COLORS = {Role.Window: QColor(45, 45, 48), Role.WindowText: QColor(230, 230, 230),
               Role.Base: QColor(30, 30, 32), Role.AlternateBase: QColor(45, 45, 48),
               Role.ToolTipBase: QColor(30, 30, 32), Role.ToolTipText: QColor(230, 230, 230),
               Role.PlaceholderText: QColor(140, 140, 140), Role.Text: QColor(230, 230, 230),
               Role.Button: QColor(53, 53, 56), Role.ButtonText: QColor(230, 230, 230),
               Role.BrightText: QColor(255, 80, 80), Role.Link: QColor(90, 160, 255),
               Role.Highlight: QColor(42, 110, 200), Role.HighlightedText: QColor(255, 255, 255),
               Role.Light: QColor(75, 75, 78), Role.Midlight: QColor(62, 62, 65), Role.Mid: QColor(40, 40, 42),
               Role.Dark: QColor(25, 25, 27), Role.Shadow: QColor(10, 10, 10)}
DISABLED_TEXT = QColor(120, 120, 120)


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, color in DARK_COLORS.items():
        palette.setColor(role, color)
    for role in (Role.WindowText, Role.Text, Role.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, DISABLED_TEXT)
    return palette


def is_dark(palette: QPalette) -> bool:
    return palette.color(Role.Window).lightness() < 128


def follow_color_scheme(app: QApplication) -> None:
    """Give the app a dark palette while the desktop's scheme is dark and the style's own palette is light."""
    style_palette = app.palette()

    def apply(scheme: Qt.ColorScheme) -> None:
        dark = scheme == Qt.ColorScheme.Dark
        if dark and not is_dark(style_palette):
            app.setPalette(dark_palette())
        else:
            app.setPalette(style_palette)

    apply(app.styleHints().colorScheme())
    app.styleHints().colorSchemeChanged.connect(apply)
