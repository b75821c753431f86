"""Pages people use in a browser: the buyer's cashier and the operator console.

Server-rendered Jinja2 templates with a small progressive layer of plain JavaScript; the CSS,
scripts and images ship inside the package (`web/static`), so a platform with no internet still
draws every page. Pages call the same use cases as the JSON API and the CLI: nothing here moves
money or decides a state on its own.
"""
