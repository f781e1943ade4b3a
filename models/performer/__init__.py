"""The Performer family: expression realised from markings, the performance data it renders, and
the alignment model (score timing to performed timing). Synthesis and vocoder models go beside it."""
