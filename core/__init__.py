"""Cross-cutting pieces every room uses: settings, the error tree, logging."""
