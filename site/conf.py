"""Sphinx configuration of the course site (used by site/build_site.py, which runs Sphinx on
the staged sources in build/site/src with ``-c site``). Everything the pages load is bundled:
MathJax comes from sphinx-mathjax-offline, and no ipywidgets JavaScript is loaded from a CDN.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's tools/
from tools import course  # noqa: E402

project = "The U-Net course"
author = "The U-Net course authors"
copyright = "the U-Net course authors, MIT licence"

extensions = ["myst_nb", "sphinx-mathjax-offline"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# The notebooks are executed (and cached) by build_site.py before Sphinx runs.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # the explorer's sliders need a kernel; the page shows its static figure
nb_merge_streams = True
nb_render_markdown_format = "myst"  # Markdown outputs (tables, math) as in JupyterLab

html_theme = "sphinx_book_theme"
html_title = "The U-Net course"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_favicon = "favicon.svg"  # browsers ask for /favicon.ico otherwise (a 404 in the console)
# The theme logs a console error on a first visit unless it is given a default colour mode.
html_context = {"default_mode": "auto"}
html_theme_options = {
    "repository_url": f"https://github.com/{course.GITHUB_REPO}",
    "repository_branch": course.BRANCH,
    "path_to_docs": "",
    "use_repository_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "show_navbar_depth": 1,
    "home_page_in_toc": True,
}
if os.environ.get("UNET_COURSE_SITE_QUICK") == "1":
    html_theme_options["announcement"] = (
        "Executed in quick mode: smaller data and fewer epochs than a learner's run."
    )
