"""Recognition with a trained checkpoint: one inference path under eval, infer and serve."""
