"""The FBNetV3 predictor: an MLP encoder pretrained on proxies, a Huber-loss head, an ensemble."""
