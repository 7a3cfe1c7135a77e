// placeholder: replaced by the @herald/client build (see js/client)
