import six

print(f"six {six.__version__} is installed; this file was attached at run time")
