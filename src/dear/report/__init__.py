"""Paper tables and the α figure from a sweep's runs: ``python -m dear.report SWEEP_DIR``.

runs.py reads run directories (or a W&B group), table.py lays the cells out as the paper does,
render.py writes Markdown / LaTeX / JSON, figure.py the PNG of the average against α.
"""
