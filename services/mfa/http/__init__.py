"""The JSON API of SPEC section 4, by area: login, security (My account), admin, health."""
