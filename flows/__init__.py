"""The flows a user launches (`finetune`, `retrain`) and the `afinar` command line."""
