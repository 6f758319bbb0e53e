"""BLIP-2 (Li et al. 2023): a frozen ViT, a Q-Former and a frozen language model, evaluated with
LAVIS's protocol. The second model family of the harness and the worked example of adding one
(``docs/plugins.md``)."""
