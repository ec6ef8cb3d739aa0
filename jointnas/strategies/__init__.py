"""What to try next: coarse batch policies (``batch``) and fine-stage strategies."""
