"""Microsoft's WSK samples, translated line for line (importable, so ``pywsk demo`` runs them)."""
