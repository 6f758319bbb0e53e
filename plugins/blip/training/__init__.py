"""``harness toy train``: blip-tiny trained on the toy suite with BLIP's objectives (``trainer``),
its data (``data``) and losses (``losses``)."""
