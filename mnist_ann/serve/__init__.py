"""`mnist-ann serve`: a trained checkpoint as an HTTP prediction service, with a page to draw on and train from.

mnist_ann.serve.server       DigitAPI (LitServe's four methods) and `serve`, the command
mnist_ann.serve.middleware   what stands in front: the request gate and the security headers
mnist_ann.serve.app          the page's routes, the error shape, the API schema, /metrics
mnist_ann.serve.runs         the runs under lightning_logs/: their settings, scores and models
mnist_ann.serve.lab          the lab: `fit` and `test` jobs started, watched and stopped from the page
mnist_ann.serve.handwriting  your own drawings: kept, measured on, taught
mnist_ann/serve/web/         the page: index.html, page.css and its plain ES modules
"""
