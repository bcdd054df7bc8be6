"""What readers see: the leaderboard pages (``pages``: markdown, HTML, csv, group figures) and
the static results site (``site`` publishes it; ``site_pages`` writes each page's HTML,
``site_style`` holds its CSS and script)."""
