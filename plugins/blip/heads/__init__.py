"""BLIP's inference heads: one class per fine-tuned head (``retrieval``, ``captioning``, ``vqa``,
``verification`` with the NLVR2 twin attention in ``nlvr2``) on the shared ``base``, and the
decoding they share (``generation``)."""
