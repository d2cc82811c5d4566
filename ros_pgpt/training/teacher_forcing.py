"""The teacher-forced training pass: one batch at one visual-token count -> every objective's losses.

The image prefix runs once per frame; its KV cache is then gathered for every
prompt on that frame (as at run time), which keeps the LLM cost per prompt to
its text tokens. The ``<obj>`` targets (and the match head's probes) of a
frame are decoded in one call, each in its slot.
"""

from __future__ import annotations

import torch
from torch import nn

from ros_pgpt.training.objectives import OBJECTIVES, Pass


class TeacherForcing(nn.Module):
    """``TeacherForcing(model)(images, batch, num_tokens)`` -> {loss name: value}; a module, so that
    DistributedDataParallel can wrap it."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, batch, num_tokens: int,
                pyramid: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        from transformers import DynamicCache

        model = self.model
        if needs_object_list(model) and batch.object_masks is None:
            raise ValueError("this model's dense losses need every object: collate(..., list_objects=True)")
        if model.perception_decoder.match_head is not None and batch.probe_rows is None:
            raise ValueError("this model's match head needs negatives: collate(..., match_probes=True)")
        frames = model.encode_frames(images, pyramid)
        prefix = model.image_prefix(frames, num_tokens)
        prefix_len = prefix.shape[1]
        cache = DynamicCache()
        prefix_hidden, _, _ = model.language_model(prefix, past_key_values=cache)
        _select_frames(cache, batch.scene_index)
        embeds = text_embeddings(model, batch)
        rows = embeds.shape[0]
        attention = torch.cat([batch.text_mask.new_ones(rows, prefix_len), batch.text_mask], dim=1)
        positions = torch.arange(prefix_len, prefix_len + embeds.shape[1], device=embeds.device)
        hidden, logits, _ = model.language_model(embeds, attention_mask=attention.long(), past_key_values=cache,
                                                 position_ids=positions.expand(rows, -1))
        run = Pass(frames=frames, visual=model.visual_hidden(prefix_hidden), hidden=hidden, logits=logits)
        if batch.obj_rows.numel():
            _decode_objects(model, batch, run)
        losses = {}
        for objective in OBJECTIVES:
            losses |= objective(model, batch, run)
        return losses


def needs_object_list(model) -> bool:
    """Whether the dense training losses need every object of every frame (``collate(list_objects=)``)."""
    return (model.pixel_attributes is not None or model.perception_decoder.box_readout == "pixel_votes"
            or model.superlatives is not None)


def collate_options(model) -> dict:
    """The keyword arguments of ``batching.collate`` that make this model's training batches."""
    return {"image_size": model.image_size, "mask_side": model.mask_side, "list_objects": needs_object_list(model),
            "match_probes": model.perception_decoder.match_head is not None}


def text_embeddings(model, batch) -> torch.Tensor:
    """Token embeddings plus perception-encoder codes for input boxes and object feedback."""
    embeds = model.language_model.embed(batch.text_ids)
    extra = torch.zeros_like(embeds)
    if batch.box_rows.numel():
        extra[batch.box_rows, batch.box_cols] = model.perception_encoder(batch.box_values)
    # The token after each <obj> carries the box just found (teacher forcing).
    follow = batch.obj_cols + 1
    keep = follow < embeds.shape[1]
    if keep.any():
        extra[batch.obj_rows[keep], follow[keep]] += model.perception_encoder(batch.obj_boxes[keep])
    return embeds + extra


def _decode_objects(model, batch, run: Pass) -> None:
    """Decode every <obj> target (and probe) with the training readout; fills ``run``'s boxes, masks
    and match logits."""
    hidden = run.hidden
    matching = model.perception_decoder.match_head is not None
    decoded_rows, decoded_cols, decoded_slots = batch.obj_rows, batch.obj_cols, batch.obj_slots
    if matching:  # the probes ride in the same decoder call, in slots after the targets
        decoded_rows = torch.cat([decoded_rows, batch.probe_rows])
        decoded_cols = torch.cat([decoded_cols, batch.probe_cols])
        decoded_slots = torch.cat([decoded_slots, batch.probe_slots])
    decoded_frames = batch.scene_index[decoded_rows]
    slots = hidden.new_zeros(run.frame_count, int(decoded_slots.max()) + 1, hidden.shape[-1])
    slots[decoded_frames, decoded_slots] = hidden[decoded_rows, decoded_cols]
    decoder = model.perception_decoder
    pointer = model.pointer_grid(slots, run.visual) if decoder.prior_gain is not None else None
    boxes, mask_logits, match_logits = decoder.decode_for_training(slots, run.frames.keys_values,
                                                                   run.frames.mask_map, pointer)
    frame = batch.scene_index[batch.obj_rows]
    run.boxes, run.mask_logits = boxes[frame, batch.obj_slots], mask_logits[frame, batch.obj_slots]
    if matching:
        run.match_logits = match_logits[decoded_frames, decoded_slots]


def _select_frames(cache, index: torch.Tensor) -> None:
    """Give every prompt (row) its frame's KV cache, ``index`` naming each row's frame. ``index_select``
    instead of the cache's own fancy indexing: its backward (``index_add``) is ~4x faster than the
    accumulating ``index_put`` that indexing backs onto."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index)
        layer.values = layer.values.index_select(0, index)
