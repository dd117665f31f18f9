"""`mnist-ann serve`: a trained checkpoint as an HTTP prediction service, with a page to draw on and train from.

mnist_ann.serve.server       `serve`, the command: the service built and run
mnist_ann.serve.worker       DigitAPI, each inference worker: LitServe's four methods
mnist_ann.serve.lifetime     the service's processes: the port checked, a stop in order, none left behind
mnist_ann.serve.guard        whom the service answers: its own host names, its own page's changes, a body's size
mnist_ann.serve.middleware   what stands in front: the request gate and the security headers
mnist_ann.serve.app          the page's routes, the error shape, the API schema, /metrics
mnist_ann.serve.runs         the runs under lightning_logs/: their settings, scores and models
mnist_ann.serve.lab          the lab's routes: `fit` and `test` jobs started, watched and stopped from the page
mnist_ann.serve.jobs         the lab's one job at a time: a command line's process, its state and its end
mnist_ann.serve.handwriting  your own drawings: kept, measured on, taught
mnist_ann/serve/web/         the page: index.html, page.css and its plain ES modules
"""
