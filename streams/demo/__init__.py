"""``distillwatch demo``: the whole loop on simulated MangaAssist traffic, in one command."""
