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

The small-photo sources (gcompris-qt-data, kphotoalbum, puzzle-jigsaw) add what wallpapers lack: animals,
people, buildings and sea life. Their photos are 0.4-2 MP, so they are judged by ``min_pixels`` = 0.4 MP
(0.1 MP after halving, e.g. 400x300: still 6,500 positions of a 256 px sr training crop and 34,000 of a
160 px deblock one) and by ``fetch.MIN_SIDE``. GCompris keeps its photos as WebP inside Qt resource files
(read by ``rcc``), their licences in upstream READMEs beside them or in a folder above (Debian's copyright
file still names the photos' old JPEG versions). Left out there: the drawings (lang, babyshapes, ...),
details' paintings and photos (under 0.5 MP), four photos under 512 px on the short side (crocodile,
victoriaMemorial, cabrillo, ireland), georgeWashingtonBirthplace (a scan with a black frame) and
germany/aulaPalatina, whose licence is unclear: the README gives its licence to "audaPalatina.webp", a
file that does not exist. kphotoalbum's copyright file is not machine-readable and does not name the demo
photos; upstream's REUSE file (.reuse/dep5, invent.kde.org/graphics/kphotoalbum) gives them as
CC-BY-SA-4.0, which ``license`` records. Its anne_helene (400x600) is too narrow for a training crop.

``content`` tags each photo with one of CONTENT_KINDS, by eye, so that ``split`` can hold out photos of
every kind. Street scenes and text are nearly absent from free photo packages: brandenburgGate, japan (a
festival under a sign) and kphotoalbum's snow (an airport apron) are all the street there is.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MIN_PIXELS = 1_000_000  # wallpapers: 0.25 MP or more after halving

CONTENT_KINDS = ("animals", "people", "buildings", "street", "landscapes", "underwater", "close-ups")


@dataclass(frozen=True)
class PhotoSource:
    """Which files of a package are photographs, what they show and how to name them."""

    package: str
    patterns: tuple[str, ...]  # globs relative to the package root (the installed tree)
    exclude: tuple[str, ...] = ()  # file stems that are drawings or patterns, not photographs
    edj: bool = False  # Enlightenment backgrounds: the photo is a JPEG stream inside an Eet archive
    rcc_entries: tuple[str, ...] = ()  # Qt resource files: globs of the photos' paths inside each archive
    name_parent: int | None = None  # take the name from path.parents[n] (plasma: the wallpaper folder)
    license: str = ""  # the photos' licence where no machine-readable file gives it
    license_note: str = ""  # where debian/copyright and upstream's own licence file say different things
    min_pixels: int = MIN_PIXELS  # of the original, before halving
    content: str = "close-ups"  # the kind (CONTENT_KINDS) of most photos of the source
    content_of: Mapping[str, str] = field(default_factory=dict)  # file stem -> kind, where it differs


_ENLIGHTENMENT_PHOTOS = ("Bamboo", "Foggy-Trees", "God-Rays", "Green-Maple", "Lichen-Branches", "Mountain",
                         "Peaks", "Red-Maple", "Sea-of-Lanterns", "Snow-Trees", "Spruce-Needles",
                         "Sunset-Clouds", "White-Flower", "Yellow-Flower")
_PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
                  "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")
_LXQT_PHOTOS = ("Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
                "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg")

_LANDSCAPES = "landscapes"
_GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc"
_GCOMPRIS_ACTIVITIES = "gcompris/src/activities"
_SMALL_PHOTOS = 400_000  # 0.1 MP after halving; see the module's docstring

SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource("enlightenment-data",
                tuple(f"usr/share/enlightenment/data/backgrounds/{name}.edj" for name in _ENLIGHTENMENT_PHOTOS),
                edj=True,
                content_of=dict.fromkeys(("Foggy-Trees", "God-Rays", "Mountain", "Peaks", "Snow-Trees",
                                          "Sunset-Clouds"), _LANDSCAPES)),
    PhotoSource("lomiri-wallpapers-16.04", ("usr/share/backgrounds/*.jpg",),
                content_of={"friends_by_Aitzol_Berasategi": "animals",
                            **dict.fromkeys(("Bridge_by_Sander_Klootwijk", "aitzgorri_by_Aitzol_Berasategi",
                                             "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
                                             "sunset_by_Aitzol_Berasategi"), _LANDSCAPES)}),
    PhotoSource("lomiri-wallpapers-20.04", ("usr/share/backgrounds/*.jpg",),
                exclude=("Fossa_by_Jasper_Roks", "Infinite-Sea_by_Aury88", "Painting-Colors_by__herobrine7gamer"),
                content="animals"),
    PhotoSource("mate-backgrounds", ("usr/share/backgrounds/mate/nature/*.jpg",),
                content_of=dict.fromkeys(("Dune", "Storm"), _LANDSCAPES)),
    PhotoSource("plasma-workspace-wallpapers",
                tuple(f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg" for name in _PLASMA_PHOTOS),
                name_parent=2, content=_LANDSCAPES,
                content_of={"Grey": "buildings", **dict.fromkeys(("ColorfulCups", "FallenLeaf", "OneStandsOut"),
                                                                  "close-ups")}),
    PhotoSource("lxqt-themes", tuple(f"usr/share/lxqt/wallpapers/{name}" for name in _LXQT_PHOTOS),
                license_note="debian/copyright covers the wallpapers by its 'Files: *' stanza; upstream's own "
                             "/usr/share/lxqt/wallpapers/License says CC-BY-SA-3.0",
                content_of=dict.fromkeys(("Valendas", "after-the-rain", "beam", "cloud", "fog",
                                          "this-is-not-windows"), _LANDSCAPES)),
    PhotoSource("sddm-theme-maldives", ("usr/share/sddm/themes/maldives/background.jpg",), name_parent=0,
                content=_LANDSCAPES),
    PhotoSource("gcompris-qt-data", (f"{_GCOMPRIS_RCC}/erase.rcc",),
                rcc_entries=(f"{_GCOMPRIS_ACTIVITIES}/erase/resource/*.webp",), min_pixels=_SMALL_PHOTOS,
                content="animals"),
    PhotoSource("gcompris-qt-data", (f"{_GCOMPRIS_RCC}/clickgame.rcc",),
                rcc_entries=(f"{_GCOMPRIS_ACTIVITIES}/clickgame/resource/sea*.webp",), min_pixels=_SMALL_PHOTOS,
                content="underwater"),
    PhotoSource("gcompris-qt-data", (f"{_GCOMPRIS_RCC}/explore_farm_animals.rcc",
                                     f"{_GCOMPRIS_RCC}/explore_world_animals.rcc"),
                rcc_entries=(f"{_GCOMPRIS_ACTIVITIES}/explore_*_animals/resource/animals/*.webp",),
                min_pixels=_SMALL_PHOTOS, content="animals"),
    PhotoSource("gcompris-qt-data", (f"{_GCOMPRIS_RCC}/explore_monuments.rcc",),
                rcc_entries=(f"{_GCOMPRIS_ACTIVITIES}/explore_monuments/resource/*/*.webp",),
                exclude=("georgeWashingtonBirthplace", "aulaPalatina"), min_pixels=_SMALL_PHOTOS,
                content="buildings", content_of={"canyondeChelly": _LANDSCAPES, "brandenburgGate": "street"}),
    PhotoSource("gcompris-qt-data", (f"{_GCOMPRIS_RCC}/explore_world_music.rcc",),
                rcc_entries=(f"{_GCOMPRIS_ACTIVITIES}/explore_world_music/resource/music/*.webp",),
                min_pixels=_SMALL_PHOTOS, content="people",
                content_of={"japan": "street", **dict.fromkeys(("africa", "america", "middleeast"), "close-ups")}),
    PhotoSource("kphotoalbum", ("usr/share/kphotoalbum/demo/*.jpg",), min_pixels=_SMALL_PHOTOS,
                license="CC-BY-SA-4.0",
                license_note="debian/copyright is not machine-readable and puts the package under GPL-2+; "
                             "upstream's .reuse/dep5 gives demo/*.jpg as CC-BY-SA-4.0, (c) 2003-2007 Jesper K. "
                             "Pedersen",
                content="people",
                content_of={"snow": "street", "blackie": "close-ups", "donna": "animals", "donna_2": "animals",
                            "spiff": "animals", "spiff_2": "animals",
                            **dict.fromkeys(("grand_canyon_3", "skagen", "skagen_2", "sunset"), _LANDSCAPES)}),
    PhotoSource("puzzle-jigsaw", ("usr/share/puzzle-jigsaw/samples/*",), min_pixels=_SMALL_PHOTOS,
                content="animals"),
)
