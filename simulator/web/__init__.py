"""The simulator's web view: the locker wall live, actions at a click, scenarios, charts.

``server`` serves the page and its endpoints, ``actions`` carries out what the
cloud, a person or fate does (each by its real path), ``scenario`` plays TOML
files of timed steps and checks their expectations, ``charts`` gives a thermal
cabinet's temperature chart and what each cabinet's hardware can do.
"""
