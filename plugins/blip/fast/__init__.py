"""BLIP's fused inference paths, each tested against transformers' own: ITM with each image's
keys and values computed once (``itm``), the fused ViT attention (``vit``), beam search with
shared image keys and values (``beam_search``) and transformers 5's cross-attention mask fix
(``masking``)."""
