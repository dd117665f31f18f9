"""`mnist-ann serve`: a trained checkpoint as an HTTP prediction service, with a page to draw on.

mnist_ann.serve.server      DigitAPI (LitServe's four methods) and `serve`, the command
mnist_ann.serve.middleware  what stands in front: the request gate and the security headers
mnist_ann/serve/web/        the draw-a-digit page: index.html, page.css, page.js, answer.js
"""
