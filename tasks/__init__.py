"""afinar's stages: one module (or sub-package) per stage, plus the few shared pieces they need."""
