"""Deploy tickets: strip the masks, export SavedModel and TFLite, verify them in LiteRT.

``ticket`` picks a round of an experiment and checks its files (no TensorFlow, so bad input
fails at once); ``stripped`` rebuilds the Keras model without pruning wrappers; ``tflite``
converts it (float32 stored sparse, full-integer int8 stored sparse or dense); ``litert`` runs
the files in the LiteRT interpreter; ``options`` holds the export's settings; ``deploy``
writes a round's export directory and ``export.json``.

>>> from lth_tf.export.ticket import open_ticket
>>> from lth_tf.export.deploy import export_ticket
>>> ticket = open_ticket("runs/quickstart", "best")  # doctest: +SKIP
>>> export_ticket(ticket, open_ticket("runs/quickstart", 0), data, "saved_models")  # doctest: +SKIP
"""
