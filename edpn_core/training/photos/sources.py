"""The Debian packages that ship freely licensed photographs, and which of their files are photographs.

Each list is curated by eye: the other backgrounds of these packages are drawings, renders, gradients or
patterns, which would teach the network textures that photos do not have.

Looked at in Debian 12 and left out, so nobody looks again: desktop-base, gnome-backgrounds 43,
ukui-wallpapers, xfdesktop4-data, sway-backgrounds, lomiri-wallpapers, debian-edu-artwork-emerald,
terminology-data, arctica-greeter and the other plasma-workspace-wallpapers (drawn or rendered);
mypaint-data-extras (paper textures); stellarium-data (panoramas with a transparent sky, deep-sky images);
digikam-data (one photo, no per-file licence); visp-images-data (one black-and-white scan of 1927);
libreoffice-common's templates (a few photos under colour overlays). xubuntu-, budgie-, deepin- and
elementary wallpapers are not in Debian 12. The sample photos of scikit-image 0.26 and matplotlib 3.8 are
under 1 MP, save a retinal fundus image.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PhotoSource:
    """Which files of a package are photographs and how to name them."""

    package: str
    patterns: tuple[str, ...]  # globs relative to the package root (the installed tree)
    exclude: tuple[str, ...] = ()  # file stems that are drawings or patterns, not photographs
    edj: bool = False  # Enlightenment backgrounds: the photo is a JPEG stream inside an Eet archive
    name_parent: int | None = None  # take the name from path.parents[n] (plasma: the wallpaper folder)
    license_note: str = ""  # where debian/copyright and upstream's own licence file say different things


_ENLIGHTENMENT_PHOTOS = ("Bamboo", "Foggy-Trees", "God-Rays", "Green-Maple", "Lichen-Branches", "Mountain",
                         "Peaks", "Red-Maple", "Sea-of-Lanterns", "Snow-Trees", "Spruce-Needles",
                         "Sunset-Clouds", "White-Flower", "Yellow-Flower")
_PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
                  "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")
_LXQT_PHOTOS = ("Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
                "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg")

SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource("enlightenment-data",
                tuple(f"usr/share/enlightenment/data/backgrounds/{name}.edj" for name in _ENLIGHTENMENT_PHOTOS),
                edj=True),
    PhotoSource("lomiri-wallpapers-16.04", ("usr/share/backgrounds/*.jpg",)),
    PhotoSource("lomiri-wallpapers-20.04", ("usr/share/backgrounds/*.jpg",),
                exclude=("Fossa_by_Jasper_Roks", "Infinite-Sea_by_Aury88", "Painting-Colors_by__herobrine7gamer")),
    PhotoSource("mate-backgrounds", ("usr/share/backgrounds/mate/nature/*.jpg",)),
    PhotoSource("plasma-workspace-wallpapers",
                tuple(f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg" for name in _PLASMA_PHOTOS),
                name_parent=2),
    PhotoSource("lxqt-themes", tuple(f"usr/share/lxqt/wallpapers/{name}" for name in _LXQT_PHOTOS),
                license_note="debian/copyright covers the wallpapers by its 'Files: *' stanza; upstream's own "
                             "/usr/share/lxqt/wallpapers/License says CC-BY-SA-3.0"),
    PhotoSource("sddm-theme-maldives", ("usr/share/sddm/themes/maldives/background.jpg",), name_parent=0),
)
