"""Text: encode the positive / negative prompts, and expand a short prompt into a detailed caption."""

from __future__ import annotations

from . import graph_ops, video
from sora_core.prompts import expand

CATEGORY = "Sora/text"


class SoraTextEncode:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Encode a prompt and a negative prompt with the model's text encoder. The negative "
                   "prompt is what classifier-free guidance steers away from (empty = unconditional).")
    RETURN_TYPES = ("SORA_CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("Positive and negative text embeddings for the Sora sampler.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("SORA_MODEL", {"tooltip": "The Sora model whose text encoder is used."}),
            "positive": ("STRING", {"default": "a red ball bouncing", "multiline": True,
                                    "tooltip": "What the video shows. Detailed captions work best (see the prompt expander)."}),
            "negative": ("STRING", {"default": "", "multiline": True,
                                    "tooltip": "What to steer away from; empty for plain guidance."}),
        }}

    def encode(self, model, positive, negative):
        return (graph_ops.encode_prompts(model, positive, negative),)


class SoraPromptExpand:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Expand a short prompt ('a red ball bouncing') into a detailed caption of the kind the "
                   "model was trained on, keeping every constraint of the prompt; the seed fills in the rest. "
                   "A prompt schedule for Sora Long Video ('0:a red ball | 30:a blue box') is expanded "
                   "prompt by prompt, keeping its start times.")
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("prompt",)
    OUTPUT_TOOLTIPS = ("The detailed caption (or schedule of captions), for the positive prompt of Sora Text "
                       "Encode or the prompt of Sora Long Video.",)
    FUNCTION = "expand"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text": ("STRING", {"default": "a red ball bouncing", "multiline": True,
                                "tooltip": "A short prompt in the world's vocabulary (shapes, colours, motions, "
                                           "backgrounds), or a schedule 'SECONDS:prompt | SECONDS:prompt ...'."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1, "control_after_generate": True,
                             "tooltip": "Chooses whatever the prompt leaves open (background, motion, ...); "
                                        "an object's size the prompt leaves open is large."}),
        }, "optional": {
            "image": ("IMAGE", {"tooltip": "The start image of an image-to-video graph: an object's size the "
                                           "prompt leaves open is the size the image shows."}),
        }}

    def expand(self, text, seed, image=None):
        size = expand.open_size_from(None if image is None else video.image_to_frames(image)[0])
        try:
            return (expand.expand_schedule(text, seed, size),)
        except ValueError as e:                  # unknown words, or a malformed schedule
            raise ValueError(f"Sora Prompt Expander: input 'text': {e}") from None


NODE_CLASS_MAPPINGS = {"SoraTextEncode": SoraTextEncode, "SoraPromptExpand": SoraPromptExpand}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraTextEncode": "Sora Text Encode", "SoraPromptExpand": "Sora Prompt Expander"}
