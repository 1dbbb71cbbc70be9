"""The autoscale-from-zero demo (`make demo-autoscale`): zero -> N -> zero, nothing lost."""
