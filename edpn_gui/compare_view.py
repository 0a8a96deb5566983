"""Before and after of one photo on one canvas, with a split slider (or side by side), one zoom and one pan.

Scene coordinates are output pixels. The before image (input size) is drawn `scale` times larger, so for
super-resolution it covers exactly the output's geometry and both line up pixel for pixel at any zoom.
Only the visible part of each image is handed to QPainter, so panning a 100-megapixel result stays smooth.
One widget of about 500 lines: painting, zoom, pan, the divider and region selection all work in the same
view geometry, which is why they are kept together.
"""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSizeF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

Box = tuple[int, int, int, int]  # (x, y, width, height) in input pixels

BACKGROUND = QColor(38, 38, 42)
ACCENT = QColor(255, 196, 0)
CHECKER_SQUARE_PX = 8
REVEAL_MARGIN = 0.9  # a box brought into view fills at most this much of the viewport


def checkerboard() -> QBrush:
    """The usual grey squares behind transparent pixels."""
    pixmap = QPixmap(2 * CHECKER_SQUARE_PX, 2 * CHECKER_SQUARE_PX)
    pixmap.fill(QColor(204, 204, 204))
    painter = QPainter(pixmap)
    for x, y in ((0, 0), (CHECKER_SQUARE_PX, CHECKER_SQUARE_PX)):
        painter.fillRect(x, y, CHECKER_SQUARE_PX, CHECKER_SQUARE_PX, QColor(153, 153, 153))
    painter.end()
    return QBrush(pixmap)


def describe_box(box: Box) -> str:
    return f"{box[2]} × {box[3]} px"


class CompareView(QWidget):
    """Drag the divider (or press Left/Right) to compare; wheel zooms about the cursor; drag elsewhere pans;
    Shift+drag, or any drag in select mode, marks the region to preview."""

    split_changed = Signal(float)
    zoom_changed = Signal(float)
    region_selected = Signal(object)  # Box, or None when cleared

    SPLIT_GRAB_PX = 10
    SPLIT_KEY_STEP = 0.05
    ZOOM_STEP = 1.25
    MIN_ZOOM = 1 / 64
    MAX_ZOOM = 64.0
    MIN_REGION_PX = 4

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._before: QImage | None = None
        self._after: QImage | None = None
        self._after_box: Box | None = None
        self._scale = 1
        self._split = 0.5
        self._zoom = 1.0
        self._center = QPointF()
        self._fit = True  # keep fitting on resize until the user zooms
        self._side_by_side = False
        self._smooth_before = False
        self._select_mode = False
        self._region: Box | None = None
        self._drag: str | None = None  # "split", "pan" or "select"
        self._drag_last = QPointF()
        self._select_from = QPointF()
        self._select_to = QPointF()
        self._checkerboard = checkerboard()
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setMinimumSize(240, 180)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    # ------------------------------------------------------------------------------------------ public state

    def set_images(self, before: QImage | None, after: QImage | None = None, *, scale: int = 1,
                   after_box: Box | None = None) -> None:
        """Show `before` (input pixels) and optionally `after`: the whole output, or only `after_box` of it
        (a region preview). Zoom, pan and region are kept for the same photo, even when the scale changes."""
        same_photo = before is not None and self._before is not None and before.cacheKey() == self._before.cacheKey()
        old_scale = self._scale
        self._before, self._after, self._after_box, self._scale = before, after, after_box, max(1, scale)
        if not same_photo:
            self._region = None
            self._fit = True
        if self._fit:
            self.zoom_fit()
        elif scale != old_scale:
            ratio = self._scale / old_scale
            self._center *= ratio
            self._set_zoom(self._zoom / ratio)
        self.update()

    @property
    def before(self) -> QImage | None:
        return self._before

    @property
    def after(self) -> QImage | None:
        return self._after

    @property
    def scale(self) -> int:
        return self._scale

    @property
    def split(self) -> float:
        """Where the divider is, as a fraction of the width: before on its left, after on its right."""
        return self._split

    @split.setter
    def split(self, value: float) -> None:
        value = min(1.0, max(0.0, float(value)))
        if value != self._split:
            self._split = value
            self.update()
            self.split_changed.emit(value)

    @property
    def zoom(self) -> float:
        """Screen pixels per output pixel."""
        return self._zoom

    @property
    def center(self) -> QPointF:
        """The scene point (output pixels) at the centre of each viewport."""
        return QPointF(self._center)

    @property
    def side_by_side(self) -> bool:
        return self._side_by_side

    @side_by_side.setter
    def side_by_side(self, value: bool) -> None:
        self._side_by_side = bool(value)
        if self._fit:
            self.zoom_fit()
        self.update()

    @property
    def smooth_before(self) -> bool:
        """Upscale the before image smoothly (what a plain resize gives) or with nearest pixels (what it is)."""
        return self._smooth_before

    @smooth_before.setter
    def smooth_before(self, value: bool) -> None:
        self._smooth_before = bool(value)
        self.update()

    @property
    def select_mode(self) -> bool:
        return self._select_mode

    @select_mode.setter
    def select_mode(self, value: bool) -> None:
        self._select_mode = bool(value)
        self.setCursor(Qt.CursorShape.CrossCursor if value else Qt.CursorShape.ArrowCursor)

    @property
    def region(self) -> Box | None:
        return self._region

    def set_region(self, box: Box | None) -> None:
        self._region = self._clip_box(box) if box is not None else None
        self.update()
        self.region_selected.emit(self._region)

    def on_screen(self, box: Box) -> list[QRectF]:
        """Where `box` (input pixels) is drawn in each viewport, in widget pixels (possibly outside the widget)."""
        return [self._to_widget(self._box_to_scene(box), view) for view in self.viewports()]

    def viewports(self) -> list[QRectF]:
        """The whole widget, or its before and after halves side by side."""
        full = QRectF(self.rect())
        if not self._side_by_side:
            return [full]
        half = math.floor(full.width() / 2)
        return [QRectF(0, 0, half, full.height()), QRectF(half, 0, full.width() - half, full.height())]

    def visible_region(self) -> Box | None:
        """The part of the photo in view (the left viewport when side by side), in input pixels."""
        if self._before is None:
            return None
        view = self.viewports()[0]
        half_w, half_h = view.width() / 2 / self._zoom, view.height() / 2 / self._zoom
        rect = QRectF(self._center.x() - half_w, self._center.y() - half_h, 2 * half_w, 2 * half_h)
        return self._scene_rect_to_box(rect)

    def reveal(self, box: Box) -> None:
        """Bring `box` (input pixels) into view, zooming out only when it does not fit, and in split mode put the
        divider across its middle: a region preview is then seen before and after together, where one looks."""
        if self._before is None:
            return
        scene = self._box_to_scene(box)
        view = self.viewports()[0]
        if not view.contains(self.on_screen(box)[0]):
            self._set_zoom(min(self._zoom, REVEAL_MARGIN * view.width() / scene.width(),
                               REVEAL_MARGIN * view.height() / scene.height()))
            self._center = scene.center()
            self._fit = False
            self._clamp_center()
        if not self._side_by_side:
            self.split = self.on_screen(box)[0].center().x() / max(1, self.width())
        self.update()

    # ------------------------------------------------------------------------------------------ zoom and pan

    def zoom_fit(self) -> None:
        size = self._scene_size()
        if size.isEmpty():
            return
        view = self.viewports()[0]
        self._center = QPointF(size.width() / 2, size.height() / 2)
        self._set_zoom(min(view.width() / size.width(), view.height() / size.height()))
        self._fit = True

    def zoom_to(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom to `factor` screen pixels per output pixel, keeping the point under `anchor` (default: the
        viewport centre) where it is."""
        if self._before is None:
            return
        view = self._viewport_at(anchor) if anchor is not None else self.viewports()[0]
        anchor = anchor if anchor is not None else view.center()
        fixed = self._to_scene(anchor, view)
        self._set_zoom(factor)
        self._center = fixed - (anchor - view.center()) / self._zoom
        self._fit = False
        self._clamp_center()
        self.update()

    def zoom_in(self) -> None:
        self.zoom_to(self.zoom * self.ZOOM_STEP)

    def zoom_out(self) -> None:
        self.zoom_to(self.zoom / self.ZOOM_STEP)

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the view by (dx, dy) screen pixels, both sides together."""
        self._center -= QPointF(dx, dy) / self._zoom
        self._fit = False
        self._clamp_center()
        self.update()

    def _set_zoom(self, factor: float) -> None:
        factor = min(self.MAX_ZOOM, max(self.MIN_ZOOM, factor))
        if factor != self._zoom:
            self._zoom = factor
            self.zoom_changed.emit(factor)
        self.update()

    def _clamp_center(self) -> None:
        """Keep the photo in view: along a side where it fits in the view it is centred (zoomed out about the
        cursor it was left in a corner), along a longer side it pans up to its edges."""
        size, view = self._scene_size(), self.viewports()[0]

        def clamp(value: float, extent: float, room: float) -> float:
            return extent / 2 if extent * self._zoom <= room else min(max(value, 0.0), extent)

        self._center = QPointF(clamp(self._center.x(), size.width(), view.width()),
                               clamp(self._center.y(), size.height(), view.height()))

    # ------------------------------------------------------------------------------------------ geometry

    def _scene_size(self) -> QSizeF:
        if self._before is None:
            return QSizeF()
        return QSizeF(self._before.width() * self._scale, self._before.height() * self._scale)

    def _viewport_at(self, point: QPointF) -> QRectF:
        views = self.viewports()
        return next((v for v in views if v.contains(point)), views[0])

    def _to_scene(self, point: QPointF, view: QRectF) -> QPointF:
        return self._center + (point - view.center()) / self._zoom

    def _to_widget(self, rect: QRectF, view: QRectF) -> QRectF:
        top_left = view.center() + (rect.topLeft() - self._center) * self._zoom
        return QRectF(top_left, rect.size() * self._zoom)

    def _box_to_scene(self, box: Box) -> QRectF:
        x, y, w, h = box
        s = self._scale
        return QRectF(x * s, y * s, w * s, h * s)

    def _clip_box(self, box: Box) -> Box | None:
        if self._before is None:
            return None
        x, y, w, h = box
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self._before.width(), x + w), min(self._before.height(), y + h)
        return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None

    def _scene_rect_to_box(self, rect: QRectF) -> Box | None:
        s = self._scale
        x0, y0 = math.floor(rect.left() / s), math.floor(rect.top() / s)
        x1, y1 = math.ceil(rect.right() / s), math.ceil(rect.bottom() / s)
        return self._clip_box((x0, y0, x1 - x0, y1 - y0))

    def _split_x(self) -> float:
        return self._split * self.width()

    def _near_split(self, point: QPointF) -> bool:
        return (self._after is not None and not self._side_by_side
                and abs(point.x() - self._split_x()) <= self.SPLIT_GRAB_PX)

    # ------------------------------------------------------------------------------------------ painting

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        if self._before is None:
            painter.setPen(QColor(200, 200, 200))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                             "Open a photo (Ctrl+O), drop one here, or paste one (Ctrl+V)")
            return
        views = self.viewports()
        if self._side_by_side:
            self._paint_side(painter, views[0], "before")
            self._paint_side(painter, views[1], "after" if self._after is not None else "before")
            painter.setPen(QPen(QColor(0, 0, 0), 2))
            painter.drawLine(views[1].topLeft(), views[1].bottomLeft())
            self._paint_label(painter, views[0], "Before", left=True)
            self._paint_label(painter, views[1], self._after_label() if self._after else "Not restored yet",
                              left=False)
        elif self._after is None:
            self._paint_side(painter, views[0], "before")
        else:
            x = self._split_x()
            left, right = QRectF(0, 0, x, self.height()), QRectF(x, 0, self.width() - x, self.height())
            self._paint_side(painter, views[0], "before", clip=left)
            self._paint_side(painter, views[0], "after", clip=right)
            self._paint_divider(painter, x)
            self._paint_label(painter, views[0], "Before", left=True)
            self._paint_label(painter, views[0], self._after_label(), left=False)
        for view in views:
            self._paint_region(painter, view)

    def _after_label(self) -> str:
        return "After (preview of the outlined region)" if self._after_box is not None else "After"

    def _paint_side(self, painter: QPainter, view: QRectF, side: str, clip: QRectF | None = None) -> None:
        painter.save()
        painter.setClipRect(clip.intersected(view) if clip is not None else view)
        scene = QRectF(0, 0, self._scene_size().width(), self._scene_size().height())
        if side == "before" or self._after_box is not None:
            self._paint_image(painter, view, self._before, scene, self._smooth_before)
        if side == "after":
            if self._after_box is None:
                self._paint_image(painter, view, self._after, scene, self._zoom < 1)
            else:
                self._paint_preview(painter, view, self._after_box)
        painter.restore()

    def _paint_preview(self, painter: QPainter, view: QRectF, after_box: Box) -> None:
        """Outside the previewed region the after side shows the before image dimmed, so it is obvious
        which part has been restored."""
        box = self._to_widget(self._box_to_scene(after_box), view)
        outside = QPainterPath()
        outside.addRect(view)
        inside = QPainterPath()
        inside.addRect(box)
        painter.fillPath(outside.subtracted(inside), QColor(0, 0, 0, 130))
        self._paint_image(painter, view, self._after, self._box_to_scene(after_box), self._zoom < 1)
        painter.setPen(QPen(ACCENT, 2, Qt.PenStyle.DashLine))
        painter.drawRect(box)

    def _paint_image(self, painter: QPainter, view: QRectF, image: QImage | None, scene: QRectF,
                     smooth: bool) -> None:
        """Draw only the visible part of `image`, which covers `scene` (output pixels)."""
        if image is None:
            return
        target = self._to_widget(scene, view)
        visible = target.intersected(view)
        if visible.isEmpty():
            return
        if image.hasAlphaChannel():
            painter.fillRect(visible, self._checkerboard)
        sx, sy = image.width() / target.width(), image.height() / target.height()
        source = QRectF((visible.left() - target.left()) * sx, (visible.top() - target.top()) * sy,
                        visible.width() * sx, visible.height() * sy)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        painter.drawImage(visible, image, source)

    def _paint_divider(self, painter: QPainter, x: float) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(QColor(255, 255, 255), 2))
        painter.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        knob = QPointF(x, self.height() / 2)
        painter.setBrush(QColor(255, 255, 255))
        painter.setPen(QPen(QColor(0, 0, 0, 160), 1))
        painter.drawEllipse(knob, 9, 9)
        painter.setBrush(QColor(60, 60, 60))
        for direction in (-1, 1):
            tip = knob + QPointF(6 * direction, 0)
            painter.drawPolygon([tip, knob + QPointF(2 * direction, -4), knob + QPointF(2 * direction, 4)])
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)

    def _paint_label(self, painter: QPainter, view: QRectF, text: str, left: bool) -> None:
        metrics = painter.fontMetrics()
        width, height = metrics.horizontalAdvance(text) + 12, metrics.height() + 6
        x = view.left() + 8 if left else view.right() - width - 8
        box = QRectF(x, view.top() + 8, width, height)
        painter.fillRect(box, QColor(0, 0, 0, 150))
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_region(self, painter: QPainter, view: QRectF) -> None:
        """The region being drawn or chosen, with its size; not over a full result, where it no longer matters."""
        if self._drag == "select":
            box = self._scene_rect_to_box(QRectF(self._select_from, self._select_to).normalized())
        elif self._after is not None and self._after_box is None:
            return
        else:
            box = self._region
        if box is None:
            return
        painter.save()
        painter.setClipRect(view)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(ACCENT, 1, Qt.PenStyle.DashLine))
        rect = self._to_widget(self._box_to_scene(box), view)
        painter.drawRect(rect)
        text = describe_box(box)
        metrics = painter.fontMetrics()
        label = QRectF(rect.left(), rect.bottom() + 2, metrics.horizontalAdvance(text) + 8, metrics.height() + 2)
        painter.fillRect(label, QColor(0, 0, 0, 150))
        painter.setPen(ACCENT)
        painter.drawText(label, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()

    # ------------------------------------------------------------------------------------------ input

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        if self._fit:
            self.zoom_fit()
        super().resizeEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._before is None:
            return
        point = event.position()
        shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if event.button() == Qt.MouseButton.LeftButton and self._near_split(point):
            self._drag = "split"
        elif event.button() == Qt.MouseButton.LeftButton and (self._select_mode or shift):
            self._drag = "select"
            self._select_from = self._select_to = self._to_scene(point, self._viewport_at(point))
        elif event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            self._drag = "pan"
            self._drag_last = point
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        point = event.position()
        if self._drag == "split":
            self.split = point.x() / max(1, self.width())
        elif self._drag == "pan":
            moved, self._drag_last = point - self._drag_last, point
            self.pan_by(moved.x(), moved.y())
        elif self._drag == "select":
            self._select_to = self._to_scene(point, self._viewport_at(point))
            self.update()
        elif self._near_split(point):
            self.setCursor(Qt.CursorShape.SplitHCursor)
        else:
            self.setCursor(Qt.CursorShape.CrossCursor if self._select_mode else Qt.CursorShape.ArrowCursor)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag == "select":
            self._drag = None
            box = self._scene_rect_to_box(QRectF(self._select_from, self._select_to).normalized())
            big_enough = box is not None and min(box[2], box[3]) >= self.MIN_REGION_PX
            self.set_region(box if big_enough else None)
        self._drag = None
        self.setCursor(Qt.CursorShape.CrossCursor if self._select_mode else Qt.CursorShape.ArrowCursor)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120
        if steps and self._before is not None:
            self.zoom_to(self.zoom * self.ZOOM_STEP ** steps, event.position())
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        fine = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        step = self.SPLIT_KEY_STEP / 5 if fine else self.SPLIT_KEY_STEP
        key = event.key()
        if key == Qt.Key.Key_Left:
            self.split -= step
        elif key == Qt.Key.Key_Right:
            self.split += step
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_in()
        elif key == Qt.Key.Key_Minus:
            self.zoom_out()
        elif key == Qt.Key.Key_Escape and self._region is not None:
            self.set_region(None)
        else:
            super().keyPressEvent(event)
