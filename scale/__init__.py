"""Scale-out of the heavy offline jobs on Ray: corpus encoding and cross-encoder pair scoring.

Layering: ``scale`` sits beside ``pipeline`` (above ``registry``/``data`` and the fix packages,
below ``bench``/``serve``). It loads models by registry name inside each Ray actor, so it cannot be a
fix package (those never import ``registry``); it never imports ``bench`` or ``serve``. ``ray`` is
imported inside the functions, so importing ``scale`` costs nothing for users without Ray.

Example (a local Ray cluster on this machine, two actors, MiniLM loaded once per actor)::

    from scale import RayOptions, encode_texts
    emb = encode_texts(["first passage", "second passage"], "minilm", engine="ray",
                       options=RayOptions(workers=2, batch_rows=64))
"""
from scale.ray_engine import (
    RayOptions,
    encode_texts,
    ray_cluster,
    reassemble,
    run_rows_on_ray,
    score_pairs,
)

__all__ = ["RayOptions", "encode_texts", "ray_cluster", "reassemble", "run_rows_on_ray", "score_pairs"]
