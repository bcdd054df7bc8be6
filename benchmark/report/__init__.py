"""What readers see: the leaderboard pages (``pages``: markdown, HTML, csv; ``figures``: the
group and overview figures) and the static results site (``site`` publishes it; ``site_pages``
writes each page's HTML, ``site_style`` holds its CSS and script). Both are incremental: a
figure is drawn and a file written only when what it shows changed (keys and manifests of
:mod:`benchmark.results.incremental`)."""
