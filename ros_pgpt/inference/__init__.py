"""Query-time inference: the predictor (the runtime face) over one engine per backend.

    from ros_pgpt.inference.backends import create_predictor
    predictor = create_predictor(checkpoint, backend="auto")
    result = predictor.ground(image, "the red star")

``predictor`` (decoding rules, frame cache, refusals), ``engine`` (the interface),
``torch_engine`` / ``ort_engine`` / ``tensorrt_engine`` (the backends),
``backends`` (choosing and creating one), ``mask_refine``.
"""
