"""mixmatch features: product image -> mask, colours, attributes, embedding,
FashionAI keypoints and shape features. Imports neither ``recommender`` nor ``api``.
"""
