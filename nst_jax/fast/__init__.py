"""Fast arbitrary style transfer (Ghiasi et al. 2017): a style-prediction
network maps a painting to a 100-d embedding and a transformer network with
conditional instance norm paints a photo in one forward pass."""
