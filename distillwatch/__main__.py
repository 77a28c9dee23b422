from distillwatch.cli import main

main()
