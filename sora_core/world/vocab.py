"""The vocabulary of the procedural world, as data.

Everything the renderer draws, the captions say, prompt expansion parses and the analytic captioner
recognises is listed here once. Units: sizes and speeds are in *short sides* (the smaller of the
frame's width and height), speeds per second, so a scene looks the same at any resolution and fps.

Colours are chosen so the analytic captioner can always separate them: every object colour is bright
(max channel >= 200) and distinct in hue or lightness; every background, ground, occluder and brush
trail colour is dark (max channel <= 140), so brightness alone separates objects from the world.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle")
SHAPE_NOUN = {"circle": "ball", "square": "box", "triangle": "triangle"}
SHAPE_WORDS = {
    "circle": "circle", "circles": "circle", "ball": "circle", "balls": "circle", "disc": "circle",
    "discs": "circle", "disk": "circle", "disks": "circle", "dot": "circle", "dots": "circle",
    "square": "square", "squares": "square", "box": "square", "boxes": "square", "block": "square",
    "blocks": "square", "triangle": "triangle", "triangles": "triangle",
}

GENERIC_NOUNS = {"object", "objects", "shape", "shapes", "thing", "things"}   # a shape left open

SIZES = ("small", "large")
SIZE_DIAMETER = {"small": 0.16, "large": 0.28}   # bounding-box side, in short sides
SIZE_THRESHOLD = 0.22                            # captioner: small below, large above
SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large",
              "huge": "large"}

COLOURS = {   # RGB
    "red": (232, 40, 40),
    "green": (40, 204, 64),
    "blue": (48, 92, 244),
    "yellow": (246, 226, 40),
    "white": (246, 246, 246),
    "orange": (250, 140, 20),
    "purple": (156, 60, 214),
    "cyan": (40, 222, 232),
}
COLOUR_WORDS = {name: name for name in COLOURS} | {
    "violet": "purple", "aqua": "cyan", "turquoise": "cyan"}

MOTIONS = ("left", "right", "up", "down", "bouncing", "static")
MOTION_PHRASE = {"left": "moving left", "right": "moving right", "up": "moving up",
                 "down": "moving down", "bouncing": "bouncing", "static": "standing still"}
MOTION_WORDS = {
    "left": "left", "leftward": "left", "leftwards": "left",
    "right": "right", "rightward": "right", "rightwards": "right",
    "up": "up", "upward": "up", "upwards": "up", "rising": "up", "rises": "up",
    "down": "down", "downward": "down", "downwards": "down", "sinking": "down", "sinks": "down",
    "falling": "down", "falls": "down", "dropping": "down", "drops": "down",
    "bouncing": "bouncing", "bounces": "bouncing", "bounce": "bouncing", "bouncy": "bouncing",
    "static": "static", "still": "static", "stationary": "static", "resting": "static",
    "motionless": "static", "standing": "static",
}
# words that say "it moves" without saying where (the direction is then sampled among moving ones)
MOVING_WORDS = {"moving", "moves", "move", "going", "goes", "travelling", "traveling", "sliding",
                "slides", "drifting", "drifts", "gliding", "glides", "flying", "flies", "rolling",
                "rolls", "floating", "floats"}

SPEED_RANGE = (0.3, 0.6)       # left/right/up/down, short sides per second
MAX_SPEED = 1.5                # fastest an object may be made to cross an occluder in time
GRAVITY = 4.0                  # short sides per second^2, bouncing objects
RESTITUTION = 0.85             # vertical speed kept at each bounce
REST_SPEED = 0.2               # below this impact speed (short sides / s) a ball comes to rest
DROP_RANGE = (0.2, 0.6)        # drop height of bouncing objects above the floor, short sides
MARGIN = 0.03                  # free space kept between objects / edges at the start, short sides

# ---------------------------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------------------------

BACKGROUND_KINDS = ("solid", "gradient", "landscape")
BACKGROUND_COLOURS = {   # RGB, all dark
    "black": (12, 12, 16),
    "gray": (54, 54, 60),
    "navy": (18, 28, 76),
    "green": (16, 60, 34),
    "maroon": (74, 20, 28),
}
BACKGROUND_WORDS = {"black": "black", "gray": "gray", "grey": "gray", "navy": "navy", "blue": "navy",
                    "green": "green", "maroon": "maroon", "red": "maroon"}
BACKGROUND_NOUNS = {"background", "backdrop", "gradient", "sky"}
LANDSCAPE_WORDS = {"landscape", "textured", "texture", "scenery", "terrain", "hills"}
GROUND_WORDS = {"ground"}

GROUND_FRACTION = 0.18                 # height of the textured ground band, fraction of the height
GROUND_RGB = (74, 54, 36)
GROUND_DARK_RGB = (50, 36, 24)
GROUND_EDGE_RGB = (96, 72, 48)
LANDSCAPE_SKY = ((14, 16, 30), (34, 32, 46))   # top, horizon
LANDSCAPE_MAX = 90                              # brightest value any landscape pixel may take

# ---------------------------------------------------------------------------------------------
# World events
# ---------------------------------------------------------------------------------------------

EVENTS = ("none", "occluder", "brush", "pan")
EVENT_PROBS = (0.4, 0.2, 0.2, 0.2)     # sample_scene's default mix
OCCLUDER_RGB = (100, 90, 80)
OCCLUDER_WIDTH = 0.3                   # short sides; wider than the large objects
TRAIL_GAIN = 0.55                      # brush trail colour = object colour * gain (dark)
TRAIL_WIDTH = 0.3                      # trail thickness, fraction of the object's size
PAN_SPEED_RANGE = (0.15, 0.3)          # camera speed, short sides per second
EVENT_WORDS = {
    "occluder": {"occluder", "behind", "bar", "pillar", "wall", "reappears", "reappearing",
                 "hidden", "hides", "passes", "passing"},
    "brush": {"brush", "trail", "trails", "paint", "painting", "paints", "leaves", "leaving", "drawing"},
    "pan": {"camera", "pan", "pans", "panning", "tracking"},
}

# ---------------------------------------------------------------------------------------------
# Prompt words that carry no attribute
# ---------------------------------------------------------------------------------------------

COUNT_WORDS = {"one": 1, "two": 2, "three": 3, "1": 1, "2": 2, "3": 3}
STOP_WORDS = {
    "a", "an", "the", "and", "with", "to", "of", "on", "in", "over", "is", "are", "it", "its", "from",
    "at", "while", "that", "which", "there", "some", "plain", "dark", "colored", "coloured", "slowly", "quickly", "fast", "slow", "scene", "video", "clip",
    "image", "towards", "toward", "across", "around", "by", "as", "into", "onto", "under", "above",
    "along", "through", "then", "again", "reappear", "re", "appears", "solid", "lasting", "gravity", "floor", "side", "screen", "frame", "this", "their", "they", "itself",
    "shows", "showing", "we", "see", "here", "against",
}
