"""The shortcut audit: can the label be predicted from something other than the pathology?"""
