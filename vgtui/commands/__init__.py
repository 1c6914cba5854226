"""The commands, the top layer: `vgtui --headless` (headless), `vgtui compare`, `vgtui export`, `vgtui data`,
`vgtui replay` and `vgtui follow` (replay). vgtui.cli parses the first word and imports the one module it needs
(lazily: `vgtui --help` loads none of them). Nothing below this layer imports a command.
"""
