"""Explaining trained networks: filters, receptive fields, top patches, occlusion, CAM, Grad-CAM,
guided backprop, saliency, feature-space neighbours, faithfulness metrics, training diagnostics.

The notes' visualisation section (seed 004) and the papers named in each module's docstring.
"""
