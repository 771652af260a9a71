"""Pipelines: a YAML file of steps (import, check, fix, version, train, evaluate, deploy, select,
label) that ``winnow run`` runs in order, skipping the steps whose inputs did not change, stopping
at the first failed gate, and recording the run (docs/pipelines.md).

* :mod:`winnow.pipelines.spec` - the file's schema, loaded and checked;
* :mod:`winnow.pipelines.gates` - the gate language (a safe expression parser, no ``eval``);
* :mod:`winnow.pipelines.steps` - the step kinds: parameters, input fingerprints, outputs;
* :mod:`winnow.pipelines.runner` - running, caching and recording;
* :mod:`winnow.pipelines.report` - the run's HTML page.
"""
