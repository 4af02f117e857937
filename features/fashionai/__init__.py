"""The FashionAI Global Challenge 2018 formats (Alibaba with PolyU).

``schema`` holds the fixed vocabulary: the 24 keypoint names, the per-category
keypoint subsets, visibility codes and the 8 attribute tasks with class names.
"""
