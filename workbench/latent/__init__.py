"""Latent reasoning on the tiny scale: thinking in the model's own representation.

- ``workbench.latent.coconut``: continuous thoughts (Hao et al. 2024, "Coconut"). The last hidden
  state is fed back as the next input embedding, and a curriculum replaces written reasoning
  steps by such thoughts, stage by stage. A Qwen2-architecture model, driven through
  ``inputs_embeds``.
- ``workbench.latent.recurrent``: recurrent depth (Geiping et al. 2025, "Huginn"). A core block
  iterated r times, trained with a random r; more iterations at test time buy more compute, and an
  adaptive exit stops a token when successive iterations agree.
- ``workbench.latent.thought_grpo``: GRPO on a continuous-thought model. The thoughts stay
  deterministic, the visible answer is sampled and rewarded; the loss is ``workbench.grpo``'s.

Both models are built locally on synthetic multi-step tasks (``sum`` with three terms and
``reach``, two-hop graph reachability in the style of ProsQA) and cached like the tiny model.
Notebook 09 walks through them; ``benchmarks/latent.py`` measures them over three seeds.
"""
