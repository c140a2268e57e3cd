"""Staff users: accounts, roles, bearer tokens, second factors, and the sign-in face (auth/)."""
