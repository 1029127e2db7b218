"""The autoencoder and what it is made of: the U-Net, losses, the segmentation network,
inference helpers."""
